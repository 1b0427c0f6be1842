"""Features for VOP: patch tokens, global descriptors and patch centres of every image of a
dataset, from any backbone entry of the catalog, in VOP's ``overlap_feats.h5`` layout.

- :mod:`vcat.features.images`: which images (MegaDepth scene files or a folder) and how each
  is read, resized and padded, with its camera and depth;
- :mod:`vcat.features.extract`: the backbone's outputs and the patch centres;
- :mod:`vcat.features.h5layout`: the file's layout, its parts and their assembly;
- :mod:`vcat.features.run`: the batched, resumable loop.
"""
