"""What the microscope writes: the experiment plan and the NDTiff datasets."""
