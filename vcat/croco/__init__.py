"""CroCo v2 pre-training pairs: the crop list format, the stem layout, the pixel operations of
CroCo's ``extract_crops_from_images.py``, and CroCo's folder tree of ``<stem>_1.jpg`` files."""
