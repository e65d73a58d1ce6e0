"""The dashboard's screens: three views of the fleet and the dialogs over them."""
