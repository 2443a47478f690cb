"""The add-on's logic without bpy: everything here runs (and is tested) on plain Python."""
