"""Models from the catalog: networks that timm builds from a model entry, with weights read
only from a local file verified against the catalog, the fetch record or ``dvc.lock``."""
