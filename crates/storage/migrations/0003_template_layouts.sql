-- Card layouts: a front and a back SVG per template; NULL means the shipped temporary card layout.

ALTER TABLE card_templates ADD COLUMN front_svg TEXT;
ALTER TABLE card_templates ADD COLUMN back_svg TEXT;
