"""Property lists read as hostile input: moved to :mod:`appyard.signing.ios.plist` (the IPA
signer reads Info.plist files too, and signing is the lowest layer); re-exported here."""

from appyard.signing.ios.plist import MAX_DEPTH as MAX_DEPTH
from appyard.signing.ios.plist import MAX_NODES as MAX_NODES
from appyard.signing.ios.plist import MAX_PLIST_BYTES as MAX_PLIST_BYTES
from appyard.signing.ios.plist import PlistFormat as PlistFormat
from appyard.signing.ios.plist import get_bool as get_bool
from appyard.signing.ios.plist import get_date as get_date
from appyard.signing.ios.plist import get_str as get_str
from appyard.signing.ios.plist import get_str_list as get_str_list
from appyard.signing.ios.plist import load_plist as load_plist
from appyard.signing.ios.plist import plist_format as plist_format
