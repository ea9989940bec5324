"""sg3stream: streaming StyleGAN3 face inversion and editing for real videos."""
__version__ = "0.1.0"
