"""imgpub provider for gcp."""
