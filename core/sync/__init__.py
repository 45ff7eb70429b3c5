"""The sync engine: windows, upserts, status tracking and the job that ties them together."""
