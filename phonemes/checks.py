"""System checks of the phoneme tool's settings: no number no run could use (a negative size,
timeout or limit, a zero pool...), named as the environment variable that sets it, and a
PHONEME_URL the client can use. Refused at start, not met as a 500 later."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from phonemes.client import ClientConfig
from phonemes.services import MAX_OLDER_THAN

# Bounds past anything a deployment means: counts and sizes, and seconds (sockets and sleeps
# take them).
MAX_COUNT, MAX_SECONDS = 2**53, 10**9
# ROBOTPERF_PHONEMES key: (lowest, highest, whether an integer), set by PHONEME_<key>.
LIMITS = {
    "CONNECT_TIMEOUT": (0.001, MAX_SECONDS, False),
    "READ_TIMEOUT": (0.001, MAX_SECONDS, False),
    "QUEUE_TIMEOUT": (0.001, MAX_SECONDS, False),
    # Each retry doubles the backoff: 20 of them already wait for days.
    "RETRIES": (0, 20, True),
    "BACKOFF": (0, MAX_SECONDS, False),
    "POOL_SIZE": (1, MAX_COUNT, True),
    "KEEPALIVE": (0.001, MAX_SECONDS, False),
    "MAX_TEXT_LENGTH": (1, MAX_COUNT, True),
    "TIER1_MAX_ENTRIES": (1, MAX_COUNT, True),
    "TIER1_MAX_BYTES": (1, MAX_COUNT, True),
    "TOUCH_INTERVAL": (0, MAX_SECONDS, False),
    "EVICT_OLDER_THAN_DAYS": (0, MAX_OLDER_THAN.days, True),
    "EVICT_MAX_ROWS": (0, MAX_COUNT, True),
    "EVICT_MAX_BYTES": (0, MAX_COUNT, True),
    "EVICT_BATCH": (1, MAX_COUNT, True),
}


def check_limits(app_configs=None, **kwargs):
    """phonemes.E001 for each setting out of its bounds, then for a PHONEME_URL the client
    refuses."""
    options = settings.ROBOTPERF_PHONEMES
    errors = []
    for name, (low, high, integer) in LIMITS.items():
        value = options[name]
        kinds = int if integer else int | float
        # Written so that NaN and infinities fail too.
        if isinstance(value, kinds) and not isinstance(value, bool) and low <= value <= high:
            continue
        kind = "an integer" if integer else "a number"
        errors.append(
            checks.Error(
                f"PHONEME_{name} must be {kind} from {low} to {high:,}, got {value!r}",
                obj=f"ROBOTPERF_PHONEMES[{name!r}]",
                id="phonemes.E001",
            )
        )
    if not errors:
        try:
            ClientConfig.from_settings()
        except ImproperlyConfigured as e:
            errors.append(checks.Error(str(e), obj="PHONEME_URL", id="phonemes.E001"))
    return errors
