"""Per-recipient placeholders left in the frozen render of an issue.

A frozen render is compiled once per variant; these markers are then
replaced for each recipient by ``personalise`` (one pass over a pre-split
string, never a re-render). User text cannot contain them:
``content.sanitise.neutralise`` defuses the ``%%GTS_`` prefix at ingest and
when rendering.
"""

GREETING = "%%GTS_GREETING%%"
UNSUBSCRIBE_URL = "%%GTS_UNSUBSCRIBE_URL%%"
PREFERENCES_URL = "%%GTS_PREFERENCES_URL%%"

ALL = (GREETING, UNSUBSCRIBE_URL, PREFERENCES_URL)
PATTERN = r"(%%GTS_(?:GREETING|UNSUBSCRIBE_URL|PREFERENCES_URL)%%)"
