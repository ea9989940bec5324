"""Models: the StyleGAN3 generator and the ReStyle encoders, and how to load them."""
