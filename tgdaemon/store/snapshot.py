"""What both drivers' snapshot reads share: the stream's snapshot of accounts is made as JSON by the database.

A snapshot of 100,000 accounts is 100,000 account views. Made in Python (a row
object, ``views.account_view``, then encoding) they cost the daemon about a
second of CPU; made by the database as JSON text, a third of that. Each
driver's ``account_json_after`` makes what ``account_view`` makes, field for
field (tests/store/test_snapshot.py holds both drivers to it, on rows chosen
for the rules' edges); this module holds the one rule SQL has no word for.
"""

from __future__ import annotations

# What ``str.strip()`` strips (every character ``str.isspace()`` is true of): a view's name is
# ``f"{first_name} {last_name}".strip()``, and SQL trims the same characters when given them.
STRIPPED = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
            "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
