"""The project's own tests. They train the template's code on the tiny setup in tests/tiny/, never on
your model/, data_loader/ or config.json, so they pass whatever you put there."""
