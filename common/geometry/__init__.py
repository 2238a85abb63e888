"""Skeletons and cameras: joint layouts (Layout), left/right flipping, projection, the COCO-17 mapping."""
