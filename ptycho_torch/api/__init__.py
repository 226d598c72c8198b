"""The PtychoPINN-Torch API of Ptychodus 1.7.0's built-in library, over this torch backend.

:mod:`ptycho_torch.api.settings_map` (no torch) translates Ptychodus' settings;
:mod:`ptycho_torch.api.base_api` holds the classes its child processes call.
"""
