"""How texts and language codes are read: the one normalized form and the language-code rule.

The cache keys texts by this form and the reference server checks codes by this rule, so
neither has to import the other.
"""

import re
import unicodedata

LANG_PATTERN = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")


def normalize_text(text):
    """The form a text is cached and fetched under: NFC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text.casefold()).split())


def check_lang(lang):
    """ValueError unless ``lang`` is a language code like ``en`` or ``en-us``."""
    if not isinstance(lang, str) or not LANG_PATTERN.fullmatch(lang):
        raise ValueError(f"lang must be a language code like 'en' or 'en-us', got {lang!r}")
