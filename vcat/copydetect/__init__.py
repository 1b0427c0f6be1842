"""Copy-detection training sets (DISC21 and VSC style): every source image written as its
resized original plus augmented copies, each copy made by a few transforms drawn from a
declared pool, every random choice derived from (seed, class, copy, attempt).

- :mod:`vcat.copydetect.seeds`: the derived generators;
- :mod:`vcat.copydetect.pool`: the transform pool (a registry of named transforms);
- :mod:`vcat.copydetect.overlays`: fonts, emoji and the drawing of text and emoji;
- :mod:`vcat.copydetect.groundtruth`: the DISC21 ``query_id,reference_id`` CSV;
- :mod:`vcat.copydetect.generate`: the run (sources, classes, shards, resume, parts).
"""
