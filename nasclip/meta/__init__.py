"""Media metadata beside the CLIP vector: capture time, camera and position (exif), and offline places."""
