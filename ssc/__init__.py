"""ssc: semantically structured coding for machines.

An image is split into mask-defined groups; each group is coded independently into its own
bitstream segment, so a receiver decodes only the objects it needs (Feng et al., ICCV 2023).
"""
__version__ = "0.1.0"
