"""The commands of `mura-tf` (`python -m mura_tf COMMAND`): one module each, with `main(argv)`.

Library code lives beside this package; a command parses flags, calls it and prints.
"""
