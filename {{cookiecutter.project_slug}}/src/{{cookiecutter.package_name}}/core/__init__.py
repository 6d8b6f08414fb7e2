"""The bottom layer: errors, files, parameters, the data schema, tables, the model file, scoring.

Everything else imports it; it imports nothing else of the package. The service image ships it.
"""
