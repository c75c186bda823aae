# renkei_add_plugin(<target> SOURCES ...): a plugin as a MODULE library with hidden visibility,
# so that only renkei_plugin_entry is exported.
function(renkei_add_plugin target)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX "" CXX_VISIBILITY_PRESET hidden C_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${target} PRIVATE RenkeiPluginApi::sdk)
endfunction()
