// the management page (to come)
