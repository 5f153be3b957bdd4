"""`make bench`: benchmarks that compare against baselines measured in the same run."""
