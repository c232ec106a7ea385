"""Revision files; each applies named files from sql/schema/."""
