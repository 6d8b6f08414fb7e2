"""The bottom layer: errors, files, parameters, the data schema, tables, the model file, scoring,
and the drift summary that the drift stage writes and the gate and the workflows read.

Everything else imports it; it imports nothing else of the package. The service image ships it.
"""
