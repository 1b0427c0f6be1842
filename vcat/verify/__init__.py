"""Checking data on disk against the catalog: a tree's layout (``layout``) and every file's
size and digest (``manifest``)."""
