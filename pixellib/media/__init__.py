"""Images and videos in and out."""
