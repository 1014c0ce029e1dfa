"""A simulated microscope that writes real NDTiff datasets."""
