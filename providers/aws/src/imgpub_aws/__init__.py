"""imgpub provider for aws."""
