"""A qi2lab MERFISH microscope that writes real NDTiff datasets at a realistic pace.

One module per part of the scope it models, each importing only the ones above it here:

- `cameras`: the ORCA and the FLIR: names, gain and offset, orientation to the stage, hot
  pixels, and the frame each records of the photons it sees;
- `settings`: what to simulate (`SimulationSettings`), checked when made (`SimulationError`);
- `stage`: where the stage stands for each tile and round, and the window of the sample it shows;
- `sample`: the specimen (cells, codebook genes' spots, drift between rounds) and the plane of
  it each exposure renders, a pure function of (settings, round, tile, channel, z);
- `writer`: the files in the scope's formats (NDTiff through ndstorage's own writer, the CSVs);
- `truth`: the ground truth (simulation_truth.json) tests and the demo compare the datastore with;
- `microscope`: the acquisition (`simulate`): order of files and planes, pace, plane hooks;
- `badtiles`: plane hooks that make tiles bad the ways the live monitor must single out.

After a correct ingestion (transpose, mirrored axes stored negated) tiles placed by
`stage_zyx_um` line up; counts are offset + Poisson(photons), plus a fixed map of hot pixels per
camera and a few saturated voxels (cosmic rays) per plane.
"""
