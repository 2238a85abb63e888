"""D3DP: diffusion-based 3D human pose estimation with joint-wise reprojection aggregation."""
