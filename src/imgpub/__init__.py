"""imgpub: publish golden VM images to AWS, GCP, Azure and local folders from one manifest."""

__version__ = "0.1.0"
