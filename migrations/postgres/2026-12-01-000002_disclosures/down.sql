DROP TABLE disclosure_members;
DROP TABLE disclosures;
