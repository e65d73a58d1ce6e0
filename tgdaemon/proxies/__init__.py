"""Proxies of their own for accounts: what an operator's proxy URL means (``url``), and the health checker
that holds the accounts of a dead proxy in a ``proxy`` cooldown until it answers again (``checker``)."""
