"""The demo loop: scripted scenario, simulated camera, speech script and the runner (`make demo`)."""
