"""The release: the plan (pure data) and the stages that carry it out."""
