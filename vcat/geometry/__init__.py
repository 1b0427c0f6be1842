"""Camera geometry for overlap ground truth: readers of the source formats and the overlap.

Conventions shared by every module here (COLMAP's and OpenCV's, as in :mod:`vcat.demo.scenes`):

- camera: x right, y down, z forward; a pose is the 4x4 world-to-camera matrix
  ``X_cam = R @ X_world + t``;
- image: origin at the top-left corner, the centre of the pixel in row ``r``, column ``c`` at
  ``(c + 0.5, r + 0.5)``, and ``K`` maps camera coordinates to these continuous coordinates, so
  resizing an image by ``(sx, sy)`` scales the first two rows of ``K`` by ``sx`` and ``sy``
  (no half-pixel shift);
- depth: the z of the surface point in the camera frame; a value that is not finite or lies
  outside the valid range is no depth.

Readers convert the source formats to these conventions (:mod:`vcat.geometry.matterport`,
:mod:`vcat.geometry.megadepth`) and return new arrays, never views of a shared one.
"""
