"""The network and its diffusion: the denoiser, the DDIM sampler, checkpoints, devices, engines, chunking."""
