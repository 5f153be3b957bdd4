"""Reading /metrics as a scraper does: the text format parsed into samples, for the tests."""

from prometheus_client.parser import text_string_to_metric_families


def parse(text):
    """``{(sample name, frozenset of label pairs): value}`` of a scrape's text."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client):
    """The samples /metrics answers a Django test client (from 127.0.0.1, an allowed address)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def value(samples, name, **labels):
    """A sample's value; 0 when it is not there (a counter that never moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def families(text):
    """Every sample name each family of a scrape may have, declared or with samples."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gauge": ("",),
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names
