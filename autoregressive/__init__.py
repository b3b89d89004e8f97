"""autoregressive"""
