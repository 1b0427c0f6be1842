"""Downloading catalog sources: transports (http, s3, file), Google Drive's pages, resumable
atomic downloads with classified failures, and the per-entry work area that holds partial
and quarantined files beside the dataset root."""
