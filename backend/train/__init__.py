"""Training the multi-view model (paper section 3.2, "Implementation"): configuration
(config.py), the multi-view diffusion loss (objective.py), the LR schedule (schedule.py) and
the accelerate loop (loop.py). Entry point: `gen3dface train CONFIG`."""
