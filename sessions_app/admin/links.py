"""The session list's sort, filter and page links: each keeps the rest of the query."""

from itertools import groupby
from urllib.parse import urlencode


class ListLinks:
    def __init__(self, request, query, page):
        self.params = request.GET.copy()
        self.query, self.page = query, page

    def with_(self, **changes):
        """This query with ``changes`` (None drops a key); any change but a page goes to page 1."""
        params = {k: v for k, v in self.params.items() if k != "p" or "p" in changes}
        params.update(changes)
        return "?" + urlencode(sorted((k, v) for k, v in params.items() if v not in (None, "")))

    def hidden(self):
        """(name, value) of the filters and sort, for the search form to keep them."""
        return sorted((k, v) for k, v in self.params.items() if k not in ("q", "p") and v)

    def _sort(self, name):
        descending = not (self.query.sort == name and self.query.descending)
        return self.with_(sort=name, order="desc" if descending else "asc")

    @property
    def sort_size(self):
        return self._sort("size")

    @property
    def sort_turns(self):
        return self._sort("turns")

    @property
    def sort_seen(self):
        return self._sort("seen")

    @property
    def oversized(self):
        return self.with_(oversized=None if self.query.oversized else "1")

    @property
    def legacy(self):
        return self.with_(legacy=None if self.query.legacy else "1")

    @property
    def bots(self):
        """(bot name, [(bot total, link, selected) per bot_config of that name]) per bot name the
        census counted: one bot's sessions may have several bot_configs (one per version)."""
        counted = self.page.census.bots if self.page.census else []
        links = [(b, self.with_(bot=b.digest or None), b.digest == self.query.bot) for b in counted]
        links.sort(key=lambda link: link[0].bot_id)
        return [(name, list(group)) for name, group in groupby(links, lambda link: link[0].bot_id)]

    @property
    def without_search(self):
        return self.with_(q=None)

    @property
    def all_bots(self):
        return self.with_(bot=None)

    def pages(self):
        """Page numbers to link: the first, the last, and two either side of this one, with None
        where pages are skipped (shown as an ellipsis)."""
        shown = sorted(
            n
            for n in {1, self.page.pages, *range(self.page.page - 2, self.page.page + 3)}
            if 1 <= n <= self.page.pages
        )
        links = []
        for before, n in zip([0, *shown], shown, strict=False):
            if n > before + 1:
                links.append((None, None))
            links.append((n, self.with_(p=n)))
        return links
