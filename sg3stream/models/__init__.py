"""Models: the StyleGAN3 generator and the ReStyle encoders, and how to load them."""
from .configs import BUILTIN_GENERATORS
from .loading import convert_generator, generator_from_state_dict, infer_generator_config, load_generator
from .restyle import load_encoder
from .stylegan3 import Generator

__all__ = ["BUILTIN_GENERATORS", "Generator", "convert_generator", "generator_from_state_dict",
           "infer_generator_config", "load_encoder", "load_generator"]
