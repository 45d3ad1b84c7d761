"""The embedded synthetic world, its target model, tiny test models and the offline demo."""
