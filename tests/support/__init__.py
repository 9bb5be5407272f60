"""Test support: stand-ins for what CI does not have (a CUDA GPU).  The product (nnxp) never imports it."""
