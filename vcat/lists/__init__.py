"""Image path lists as training code reads them: fixed-width memmaps, the arrays beside them,
and the datasets over them.

:mod:`~vcat.lists.reading` reads a list file in blocks, :mod:`~vcat.lists.parsing` turns the
guides' list formats into fixed-width rows, :mod:`~vcat.lists.labels` labels paths by their
parent folder, :mod:`~vcat.lists.folder` writes (and merges) list folders, and
:class:`~vcat.lists.memmap.PathList` reads them lazily in each DataLoader worker.
"""
