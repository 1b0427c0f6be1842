"""The demo world: small datasets with exact geometry, built from photos shipped in packages.

It plays the part of the upstream servers for the ``demo-*`` catalog entries, so that the
whole pipeline (fetch, verify, prepare, release) runs offline in minutes.
"""
