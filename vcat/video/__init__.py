"""Videos to frames: decoding on a time grid, the naming scheme of frames, and their reader."""
