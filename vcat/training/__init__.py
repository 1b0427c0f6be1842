"""Training code the pipeline's stages share: objectives, loops, schedules."""
