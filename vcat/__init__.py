"""vcat: a declarative catalog of computer-vision datasets and models, versioned with DVC."""

__version__ = "0.1.0"
