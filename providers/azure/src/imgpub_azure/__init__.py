"""imgpub provider for azure."""
