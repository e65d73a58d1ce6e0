"""The dashboard's screens: four views of the fleet (accounts, quotas, events, nodes) and the dialogs over them."""
