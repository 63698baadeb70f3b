"""The README's demo: a small plant and two calibration labs, fed to the running platform."""
